"""Everything that talks to the Yeastar PBX: transport, session (token keeper), decoding."""
