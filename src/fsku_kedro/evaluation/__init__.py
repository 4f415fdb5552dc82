"""The FSKU metric, shared by distillation validation and inference."""
