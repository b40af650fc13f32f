"""Outbound campaigns: schedules, compliance per purpose, limits, contact import, the dialer.

Pure modules (no I/O): ``timezones``, ``compliance``, ``limits``, ``windows``, ``pacing``,
``contacts_import``, ``optout``. I/O: ``dialer`` (claim, originate, finalize, recover) and
``service`` (what the API does: create, start, pause, stats). See docs/campaigns.md.
"""
