demo_hello <- function() paste("demo uses greetr", greetr::greetr_version())
