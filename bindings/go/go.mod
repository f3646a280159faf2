module omendb

go 1.19
