"""Soundstage pipeline pool: the CPU steps of multi-step jobs (a soundtrack's tempo matching, crossfades and
mixing), and the task that advances such a job from stage to stage. It loads no model."""
