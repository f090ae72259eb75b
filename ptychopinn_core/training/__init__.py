"""Training, decided once for every backend: the data and its batch order, the learning-rate
schedule and early stopping, and the epoch policy both training loops call."""
