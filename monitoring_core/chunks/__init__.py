"""Compressed series chunks: the lossless codec (`codec`) and the SQL around chunk rows (`store`)."""
