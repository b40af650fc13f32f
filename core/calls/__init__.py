"""Call domain logic shared by esl_app, web and jobs (no I/O)."""
