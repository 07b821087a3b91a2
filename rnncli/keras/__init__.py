"""Keras files: read every format Keras writes into rnncli's layers, write them back, and
seeded weights with Keras' initializers. Nothing in a file is ever executed."""
