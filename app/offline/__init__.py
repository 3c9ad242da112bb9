"""Offline tools: full-information cost tables (tables, sorbatch), their replay through a
policy (replay), a table as a service campaign (tablecampaign) and off-policy evaluation of
logged decisions (ope). Imported by the CLI and benchmarks, never by the running service."""
