"""Data sets: preparing them (dataset_tool.py), checking and reading them for training, the built-in toy faces,
fingerprinting a data set with the autoencoder, and reading the images given to detection."""
