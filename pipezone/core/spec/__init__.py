"""Configuration in, validated objects out: settings from the environment, YAML files, spec models, secret
references, catalog-wide checks and the JSON Schemas. The bottom layer: it imports nothing else of PipeZone."""
