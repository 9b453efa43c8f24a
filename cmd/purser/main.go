// Command purser is the Purser wallet and spend-control server and CLI.
package main

func main() {}
