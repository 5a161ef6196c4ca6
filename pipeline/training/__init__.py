"""Training and evaluation: run.main (the entry point), one epoch loop shared by both tasks (loop),
classification (classify, clips, finetune), next-event prediction (next_event), evaluation of a
checkpoint (evaluate) and metrics and plots (metrics). Imports data and models, never inference."""
