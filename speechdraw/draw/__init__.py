"""DRAW image generation: Gaussian-filter attention (attention.py), the model (model.py), MNIST and image-folder data
(data.py) and pictures of samples and glimpses (render.py)."""
