"""Raid-guard: detects bursts of member joins and locks the guild down, once per raid.

``detector`` (the pure sliding window), ``guard`` (the reactions, the alert text, the end of a
raid and the worker), ``config`` (``RAID_*``), ``__main__`` (the console script).
"""
