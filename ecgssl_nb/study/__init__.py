"""The study: every run behind the paper's tables as a planned job (`jobs`, `reproduce`), run in
this process or as Ray tasks (`cluster`); the released code's departures by name (`recipes`); the
runs folder's layout (`paths`); the studies the book runs (`book`); the notebooks' parameters
(`params`) and a run executed as its chapter notebook (`notebook_jobs`)."""
