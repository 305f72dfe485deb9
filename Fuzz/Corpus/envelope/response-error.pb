$
2ValueError: no handler for Echo