"""One YAML file per table or figure of the paper, read by training/reproduce/experiments.py; a
package only so that wheels ship the files as package data."""
