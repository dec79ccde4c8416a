"""`autosr detect` and `autosr init`: the dataset profile, presets, recommendations, measurements
(calibrate, trials), the plan (a pure function) and its rendering, and their terminal views."""
