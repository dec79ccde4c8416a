"""`autosr report`: a run folder → terminal summary, charts, crops and the HTML page."""
