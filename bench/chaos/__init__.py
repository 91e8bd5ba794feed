"""`make chaos`: faults an operator's stack meets, done to real processes, with what they cost in figures.

Each scenario starts its own servers and processes on random:tiny models, does one kind of damage and
checks the promise the README makes about it (see docs/RELIABILITY.md, "Chaos"):

- `sigkill`: a MusicGen worker SIGKILLed mid-job 20 times in a row: every job completes exactly once and
  none stays `processing` more than a minute after its worker died (the broker's visibility timeout stays
  at its hour);
- `ctrl-c`: the embedded stack (`soundstage run`) stopped with 8 jobs running and 20 queued, started again
  at once on the same port: all 28 complete, once each;
- `redis`: Redis (append-only file, as deployed) killed and restarted with 100 jobs queued: none lost;
- `postgres`: PostgreSQL stopped for 10 s under load: 503 with a code while it is down, no other failure,
  and the stack recovers without a restart.
"""
