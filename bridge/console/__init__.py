"""The operator's console at ``/dashboard``: live calls, delivery health and charts.

``timeline`` keeps per-minute series for the charts, ``health`` each subscription's
recent delivery attempts, ``sessions`` the console's logins, ``web`` the pages and
their JSON. The daemon serves it on the management listener (no login unless
``management.login``) and on the API's listener behind a login.
"""
