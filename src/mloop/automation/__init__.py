"""Automation: what runs a project's loop without a person at the keyboard.

Built so far: ``ci`` (CI/CD workflows generated for GitHub Actions and GitLab CI); of the continuous-training
agent, ``triggers`` (what starts a cycle, and how bursts are coalesced) and ``watchers`` (the polled sources:
schedule, input data, registry).
"""
