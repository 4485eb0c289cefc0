"""Several model calls for one answer: cascades (stop rules decide whether a stage
answers or escalates) and aggregates (a vote, or a refining model). The plans come from
selection/cascade.py and selection/aggregate.py; ``runner.MultiCall`` runs them.

    runner.py      the engine's entry: complete / open_stream
    cascade.py     stages in order, the budget, the last stage
    aggregate.py   the panel, the vote, the refiner's request
    calls.py       one call through the dispatcher, and what its answer says
    turn.py        the conversation's part: context windows per call (fit.py), the
                   session's history and binding
    rules.py       the stop rule interface; stop_agree.py, stop_confidence.py,
                   stop_verifier.py: one rule each
    emit.py        the chosen answer as a completion or a stream
    note.py        what the request did: x-router-calls, the log line's fields
"""
