"""Reading other code bases' files without running their code: the reference release's TensorFlow pickles."""
