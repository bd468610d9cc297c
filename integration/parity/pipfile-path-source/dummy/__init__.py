GREETING = "hello from dummy"
