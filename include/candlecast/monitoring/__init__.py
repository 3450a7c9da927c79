"""Monitoring: drift and realized-skill checks of what is served (Evidently lives here and
only here, by an import-linter contract). Above serving, whose forecast log it reads; below
orchestration, which schedules it. Nothing is implemented in this package yet."""
