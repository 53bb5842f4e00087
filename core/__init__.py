"""Pure helpers every layer shares: money in integer minor units, epoch milliseconds, URL redaction.

Nothing here does I/O or imports another package of this project.
"""
