"""``riverbed worker --processes N``: a supervisor, its worker processes, one HTTP entry."""
