"""Raid-guard: detects bursts of member joins and locks the guild down, once per raid.

``detector`` (the pure sliding window), ``guard`` (the reactions and the end of a raid),
``alert`` (its text), ``config`` (``RAID_*``), ``__main__`` (the worker).
"""
