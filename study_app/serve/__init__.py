"""What serves a built study (no model, no torch): the participant's session logic, the Streamlit pages, and the
server process. Importing this package loads nothing heavy."""
