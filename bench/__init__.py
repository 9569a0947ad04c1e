"""The gateway's benchmark harness: ``python -m bench`` (``--quick`` for a short run).

Every target runs in its own uvicorn process on 127.0.0.1, started and stopped by the
run; the load comes from ``wrk`` when it is installed, else from an asyncio client in its
own process. Modules, one concept each:

- ``serve``: the child-process entry for each target (simulator, gateway, limit, naive);
- ``peers``: Apollo Server and GraphQL Yoga on Node 24 (their code in ``bench/peers/``);
- ``limit``: the HTTP ceiling, a bare Starlette app replaying the gateway's bytes;
- ``naive``: the same schema resolving straight to the PBX, no loader, no cache;
- ``processes``: starting, probing (RSS, CPU from ``/proc``) and stopping those processes;
- ``loadgen`` (``wrk`` and its Lua script) and ``client`` (the asyncio client process);
- ``workloads``: the GraphQL documents of w1-w5; ``runner``: the plan and its runs;
- ``report``: the printed tables, ratios and ``--compare``; ``profiling``: py-spy;
- ``logcost``: ``python -m bench.logcost``, the request log's cost per line;
- ``fanout`` (the live-subscription workload's rows), ``fanout_load`` (its load process)
  and ``subscriber`` (one ``graphql-transport-ws`` client).
"""
