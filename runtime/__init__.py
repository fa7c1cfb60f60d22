"""The QuantaTissu runtime: executes TissLang programs safely inside a workspace."""
