"""One module per stage of the case: each is `async def run(case)`, which waits for people
or time and then moves the case on (`case.enter`). Closed stages have no step."""
