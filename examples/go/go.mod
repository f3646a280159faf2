module omendb-example

go 1.19

require omendb v0.0.0

replace omendb => ../../bindings/go
