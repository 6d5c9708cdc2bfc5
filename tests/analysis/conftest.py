import warnings

warnings.filterwarnings("ignore", message=".*ArviZ is undergoing a major refactor.*")
