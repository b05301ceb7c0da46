"""Return labels: bought from shipping once per return, printed from it."""
