"""Automation: what runs a project's loop without a person at the keyboard.

Built so far: ``ci`` (CI/CD workflows generated for GitHub Actions and GitLab CI).
"""
