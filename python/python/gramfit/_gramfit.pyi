from typing import List

class GramfitError(Exception): ...

class Report:
    def render(self, format: str) -> str: ...

def fit(argv: List[str]) -> Report: ...

__version__: str
