"""Back-office feeds from core banking: overdue loans in, payments in. Validated row by row."""
