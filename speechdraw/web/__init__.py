"""The page `speechdraw serve` sends (index.html: HTML, CSS and JavaScript in one file); package data, no code."""
