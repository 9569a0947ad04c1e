"""A faithful Yeastar S-Series PBX (HTTP API v2.0.0) simulator, including its bad days."""
