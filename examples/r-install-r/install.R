# Packages from the CRAN snapshot of runtime.txt's date (hellor brings greetr, its dependency).
install.packages("hellor")
