"""A microservice using the gateway: conference_report.py."""
