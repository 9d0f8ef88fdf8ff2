"""The model: its variants, card and folder, data, training, conversion, peers, evaluation, open-set check."""
