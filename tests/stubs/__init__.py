"""Local stand-ins for external services, served over real HTTP so that production
code talks to them through its ordinary client libraries."""
