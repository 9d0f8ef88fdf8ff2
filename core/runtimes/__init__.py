"""Running a model: which runtimes are here, one backend interface over them, the Predict page's predictor."""
