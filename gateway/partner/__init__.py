"""Partner regions querying Huzhou's licences.

* ``routes``: ``POST /v1/partner/licences/query`` and Huzhou's status list, with the
  partner service behind them
* ``checks``: request tokens, agreements, replay protection and rate limits
"""
