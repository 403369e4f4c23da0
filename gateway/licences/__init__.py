"""Huzhou's licence library (what partners may query).

* ``store``: the licences and their status, in SQLite or PostgreSQL, imported in bulk
"""
