"""The trained model as it leaves the Trainer: the bundle (SavedModel, .keras, vocabulary,
manifest) and its text-in, text-out serving signature."""
