"""Reference Keras trainers on tfstream datasets."""
