"""esl_app package."""
