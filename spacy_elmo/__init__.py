"""spacy-elmo: ELMo contextual word representations as a spaCy v3 plugin."""

__version__ = "0.1.0"
