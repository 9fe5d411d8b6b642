this is not valid HCL and must be ignored {
