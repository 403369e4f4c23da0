"""Cases (免证办): are the licence requirements of a Huzhou matter or 一件事 met?

``service`` judges a case (``CaseService``), ``partners`` queries partner
regions for licences not presented, ``routes`` serves ``POST /v1/cases``.
The requirements themselves are data: ``registry.CaseBook``.
"""
